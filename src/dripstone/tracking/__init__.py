"""What recipients do with a message: opens, clicks and unsubscribes, through signed URLs."""
