from agnes.cli import main

main()
