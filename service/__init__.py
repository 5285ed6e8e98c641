"""modelreg: the web service, its storage and its command line.

The rules (versions, tolerances, selection) live in the pure ``policies``
package; this package loads and stores data around them and speaks HTTP.
"""
