"""midigroove_poc package."""
