from kafkaops.cli import main

main()
