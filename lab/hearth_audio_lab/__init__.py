"""The audio service's lab: PulseAudio and MPD daemons in lab hosts, generated test pieces
(:mod:`hearth_audio_lab.labkit`) and a whole station-and-zones test bed
(:mod:`hearth_audio_lab.testbed`). Never imported by ``hearth_audio``."""
