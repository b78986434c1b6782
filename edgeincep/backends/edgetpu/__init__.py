"""Coral Edge TPU: the full-integer TFLite model with uint8 I/O, a compatibility report, edgetpu_compiler."""
