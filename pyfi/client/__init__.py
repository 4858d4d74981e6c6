"""The client side of pyfi: sending calls to sockets and fetching their results."""
