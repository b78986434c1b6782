"""One folder per backend: conversion and quantization, the host predictor, bundle specifics, recipe settings.

Backends are found by name through edgeincep.registry and imported only when used; each implements
edgeincep.backends.base.Backend and imports nothing of another backend.
"""
