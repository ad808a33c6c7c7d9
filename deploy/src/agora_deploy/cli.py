"""The agora command line."""


def main() -> None:
    """Run the agora CLI."""
