from edgeincep.cli import main

main(prog_name="edgeincep")
