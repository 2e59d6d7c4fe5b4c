from gcsdvc.cli import run

run()
