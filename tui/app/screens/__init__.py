"""The app's screens: home, import wizard, training, chat."""
