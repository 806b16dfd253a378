"""Request and response bodies of the service (PaddleX's serving schema, plus ``device``)."""

from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A threshold for every class, one per class, or {"default": t, "<class id>": t, ...}.
Threshold = Union[float, list[float], dict[str, float]]  # noqa: UP007 - pydantic schema


def reject_booleans(value: Any) -> Any:
    """pydantic would read true as 1; for a threshold or topK that is a client mistake."""
    values = value.values() if isinstance(value, dict) else (
        value if isinstance(value, list) else [value])
    if any(isinstance(v, bool) for v in values):
        raise ValueError("expected a number, not true/false")
    return value


class InferenceParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    topK: int | None = Field(None, ge=1, description="Keep only the topK best categories.")
    threshold: Threshold | None = Field(
        None, description="Score threshold(s) in [0, 1]; overrides the model's.")

    _numbers = field_validator("topK", "threshold", mode="before")(reject_booleans)


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: str = Field(description="An http(s) URL of the image, or the image file's bytes "
                                   "in base64 (a data-URI prefix is allowed).")
    inferenceParams: InferenceParams | None = None
    threshold: Threshold | None = Field(
        None, description="Same as inferenceParams.threshold (PaddleX 3.x accepts both).")
    visualize: bool | None = Field(
        None, description="Return the visualisation in result.image (default true).")

    _numbers = field_validator("threshold", mode="before")(reject_booleans)


class Category(BaseModel):
    id: int
    name: str
    score: float


class PageResult(BaseModel):
    pageIndex: int
    categories: list[Category]
    image: str | None = None


class InferResult(BaseModel):
    categories: list[Category] = Field(description="Kept categories, best score first (of the "
                                                   "first page, for a PDF or TIFF).")
    image: str | None = Field(None, description="The visualisation, a base64 JPEG; null "
                                                "when visualize is false.")
    device: str = Field(description="The device that ran the model, e.g. cpu or gpu:1.")
    pages: list[PageResult] | None = Field(
        None, description="Every page of a PDF or TIFF (at most --max_pages), in order; "
                          "absent for a plain image.")


class InferResponse(BaseModel):
    logId: str
    errorCode: int = 0
    errorMsg: str = "Success"
    result: InferResult


class ErrorResponse(BaseModel):
    logId: str
    errorCode: int = Field(description="The HTTP status.")
    errorMsg: str


class StatusResult(BaseModel):
    status: str
    device: str
    queued: int
    queueCapacity: int
    batches: int
    images: int


class StatusResponse(BaseModel):
    logId: str
    errorCode: int
    errorMsg: str
    result: StatusResult | None = None
