"""Key rotation on real Postgres: the end-to-end retirement of a key, resumability, and the fence
against the API's concurrent writes, with the same tests as the unit layer."""

from tests.unit.test_key_rotation import (  # noqa: F401
    test_after_rotation_the_old_key_can_be_removed_and_every_account_still_syncs,
    test_an_interrupted_run_resumes_and_counts_what_it_did_as_already_current,
    test_credentials_stored_by_the_api_during_a_run_are_never_overwritten_with_older_ones,
    test_unreadable_credentials_are_listed_and_the_run_goes_on,
)
