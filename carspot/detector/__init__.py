"""Detections type, region proposals and car detectors."""
