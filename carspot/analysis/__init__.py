"""The three analysis modes composed from the detector and the classifier, their evaluation, and the
labelled scenes and car-free images they are measured on."""
