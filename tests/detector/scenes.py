"""What the detector tests know about the shared scenes, in one place."""

SCENES = [
    "bus.jpg",
    "dog.jpg",
    "horses.jpg",
    "kite.jpg",
    "person.jpg",
    "street-000004.jpg",
    "street-000230.jpg",
    "times-square.png",
]
# Drawn by hand on the images (xyxy pixels).
TAXI_IN_TIMES_SQUARE = [118, 475, 437, 617]
PICKUP_IN_DOG = [465, 75, 690, 170]
