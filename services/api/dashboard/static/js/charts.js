// Charts, drawn by the vendored Chart.js (vendor/chart.min.js, loaded by the page before its
// module). A chart's canvas needs an aria-label, and the page shows the same numbers as text too.

const drawn = new WeakMap();

export function chart(canvas, config) {
  drawn.get(canvas)?.destroy();
  const made = new window.Chart(canvas, {
    ...config,
    options: { responsive: true, maintainAspectRatio: false, animation: false, ...config.options },
  });
  drawn.set(canvas, made);
  return made;
}

// Distinct colours that keep 3:1 contrast against the white page.
export const PALETTE = ["#1f5fa8", "#b3261e", "#2e7d32", "#8a4fbf", "#b05f00", "#00796b", "#c2185b", "#4e5d6c"];
