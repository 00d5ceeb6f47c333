from pattune.cli import main

main()
