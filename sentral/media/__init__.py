"""Media: RTP relay, codecs, DTMF, prompts and music on hold."""
