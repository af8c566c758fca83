// Package e2e holds end-to-end tests that run the downshift binary as a user would:
// `downshift demo` to fill a store with the demo's data, `downshift serve` on it, and a
// real browser (Debian's chromium, driven with chromedp) on the dashboard. It has no
// code of its own outside its tests.
package e2e
