from typing import Any

worker_process_shutdown: Any
worker_shutdown: Any
