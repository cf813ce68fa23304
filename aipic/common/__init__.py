"""The leaves every layer may use: errors, settings, files, images, tensors, package data, logs."""
