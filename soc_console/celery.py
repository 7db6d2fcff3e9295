from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "soc_console.settings")

app = Celery("soc_console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
