"""The admin command line (`digestd …`)."""
