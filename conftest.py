"""Root conftest: the embedded-stack fixtures are shared by every test suite."""

pytest_plugins = ["agora_deploy.testing"]
