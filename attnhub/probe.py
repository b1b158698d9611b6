def probe():
    return {}
