"""Audio: the content-addressed store, the media nodes fetch, bulletins and their audio
pipeline (probe, signal, encode), text to speech, relay source probes."""
