"""parley's benchmarks: each prints ratios measured side by side in one run. See docs/performance.md."""
