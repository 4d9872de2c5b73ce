"""Preprocessing app: a raw video -> a sequence build. One module per step, each with `main(argv)`."""
