from hearth_demo.house import build_and_run

build_and_run()
