"""TFLite / LiteRT for ARM CPUs (Raspberry Pi): full-integer INT8 .tflite, FP32 and FP16 beside it."""
