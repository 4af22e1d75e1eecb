"""Input beyond text: speech-to-text and the image pipeline."""
