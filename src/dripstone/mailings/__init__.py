"""Campaign mailings (the emails), and their sends to a list, now or at a set time."""
