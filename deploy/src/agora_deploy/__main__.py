"""``python -m agora_deploy`` runs the agora CLI."""

from agora_deploy.cli import main

main()
