"""Real peers on 127.0.0.1 that tests and benchmarks point Parley at."""
