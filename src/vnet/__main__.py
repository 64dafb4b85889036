from vnet.cli.main import app

app()
