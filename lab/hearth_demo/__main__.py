from hearth_demo.start import build_and_run

build_and_run()
