from crowdsteer.cli import app

app(prog_name="crowdsteer")
