from sentral.cli import main

main()
