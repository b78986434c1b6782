"""OpenVINO on Intel CPUs: FP32 IR in true f32, NNCF INT8 IR with accuracy control, the Intel bundle."""
