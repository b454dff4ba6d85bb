"""The consumer loop: one connection, one channel, owned by the main thread.

pika is not thread-safe. The main thread pumps the connection (which keeps heartbeats
flowing however slow the API is), decodes each delivery and hands it to the keyed pool;
the pool thread's ``Decision`` comes back through ``add_callback_threadsafe`` and is
carried out here: publish, and once the broker confirmed every publish (tracked by
``ConfirmTracker``, without a round trip per message), ack on the channel that delivered it.

One concern a module, each class adding its part on top of the one below:

- ``state.py``: what the parts share, and the count of commands in flight (``ConsumerState``);
- ``settle.py``: an outcome published with confirms, then the ack (``Settling``);
- ``receive.py``: a delivery read and handed to the pool (``Receiving``);
- ``loop.py``: the connection's life: connect, consume, reconnect, drain (``Consumer``).
"""

from worker.consumer.loop import PUMP_S, RECONNECT_BASE_S, Consumer

__all__ = ["PUMP_S", "RECONNECT_BASE_S", "Consumer"]
