from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("audit/", views.audit_page, name="audit"),
    path("audit/events/<int:seq>/", views.audit_event, name="audit-event"),
    path("audit/export.jsonl", views.audit_export, name="audit-export"),
    path("audit/verify/", views.audit_verify, name="audit-verify"),
    path("reports/", views.reports_page, name="reports"),
    path("agents/<slug:slug>/", views.agent_readiness, name="agent-readiness"),
    path("reports/<slug:report>.csv", views.report_csv, name="report-csv"),
]
