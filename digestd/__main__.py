from digestd.cli.main import main

main()
