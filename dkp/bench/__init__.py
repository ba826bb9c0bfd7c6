"""Benchmark support, apart from the course and the study: what `benchmarks/` times and how its
records are read. `matrices` is the inference benchmark's setup (the gate matrices of one medium
LSTM layer, the timer, the machine's description); `records` reads the speed records the scripts
write (inference, training step, softmax) into tables and ratios, for the README and notebook 08."""
