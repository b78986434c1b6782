"""The LiteRT toolchain both TFLite-format backends (tflite, edgetpu) build on: ONNX -> TFLite conversion
(onnx2tf + TensorFlow's converter, in a child process), INT8 graph rewrites, the host predictor, the bundle."""
