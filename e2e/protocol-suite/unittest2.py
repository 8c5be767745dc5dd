"""unittest2 was the Python 2 backport of Python 3's unittest: the suite's
`import unittest2 as unittest` gets the standard library's."""
from unittest import *  # noqa: F401,F403
from unittest import main  # noqa: F401
