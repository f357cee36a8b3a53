"""Chats as convsim reads them: the message types every stage shares (`messages`) and the
importers that turn an exported chat file into them (`importers`).

Contract: importers are pure (path in, `ParsedChat`s and a parse report out); nothing here
writes anywhere.
"""
