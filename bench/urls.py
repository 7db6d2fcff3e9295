"""URLs for the intake benchmark: the product's URLs plus a bare DRF create of an equivalent
row (no policy, no audit, no idempotency), as the reference the real endpoint is compared to.
Only used when the benchmark starts a server with BENCH_URLS=1."""

from __future__ import annotations

from django.urls import path
from django.utils import timezone
from rest_framework import generics, serializers

from agents.authentication import AgentPrincipal
from approvals.models import PROPOSED_FIELDS, Proposal
from soc_console.urls import urlpatterns as product_urls


class BareProposalSerializer(serializers.ModelSerializer):
    class Meta:
        model = Proposal
        fields = ["id", *PROPOSED_FIELDS, "status", "created_at"]
        read_only_fields = ["id", "status", "created_at"]


class BareCreate(generics.CreateAPIView):
    serializer_class = BareProposalSerializer

    def perform_create(self, serializer: BareProposalSerializer) -> None:
        principal: AgentPrincipal = self.request.user
        serializer.save(
            agent=principal.agent,
            status="pending",
            criticality="medium",
            risk="medium",
            created_at=timezone.now(),
        )


urlpatterns = [path("bench/bare-create/", BareCreate.as_view()), *product_urls]
