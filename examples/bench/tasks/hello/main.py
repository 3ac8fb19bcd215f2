"""The trivial task of the proxy-cost benchmark: answers a constant string."""


def handler(context, event):
    return "hello"
