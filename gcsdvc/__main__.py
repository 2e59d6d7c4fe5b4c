from gcsdvc.cli import main

main(prog_name="gcsdvc")
