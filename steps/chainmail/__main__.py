from chainmail._cli import main

main()
