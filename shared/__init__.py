"""The project's common package: event schemas, settings, the message-bus port and its adapters,
database models and credential encryption. Services import from here and never from each other."""
