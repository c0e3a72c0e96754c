from mmtrack.cli import main

main()
