"""The Textual app: screens (home, import wizard, training, chat), shared widgets and the
stylesheet. Imported only when the app starts; `convsim.core` never imports it.
"""

from convsim.tui.app.app import ConvsimApp, run_app, smoke_test

__all__ = ["ConvsimApp", "run_app", "smoke_test"]
