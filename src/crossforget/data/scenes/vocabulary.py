"""What the built-in ``scenes`` dataset can show and say: classes, scene types and caption words.

Pure data, kept apart from the generator so the label space and its statistics can be read (and
reviewed) in one place. Class names, order and supercategories follow COCO so that results on
``scenes`` read like results on COCO; only classes with a recognisable emoji sprite are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ClassSpec:
    """One COCO category with its emoji and the nouns captions may use for it.

    ``nouns`` holds (singular, plural) pairs; the first pair is the plainest wording. ``countable``
    classes may appear as several instances in one image ("two dogs"). ``with_person`` is the chance
    that a person is added to a picture that shows this class without one (dog walkers, skiers).
    """

    name: str
    coco_id: int
    supercategory: str
    emoji: str
    nouns: tuple[tuple[str, str], ...]
    countable: bool = True
    with_person: float = 0.0


def _n(*pairs: str) -> tuple[tuple[str, str], ...]:
    """Parse "singular|plural" strings; a bare word takes a regular "s" plural."""
    out = []
    for pair in pairs:
        singular, _, plural = pair.partition("|")
        out.append((singular, plural or singular + "s"))
    return tuple(out)


CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("person", 1, "person", "\U0001f9cd",
              nouns=_n("person|people", "man|men", "woman|women", "child|children", "boy", "girl")),
    ClassSpec("bicycle", 2, "vehicle", "\U0001f6b2", _n("bicycle", "bike"), with_person=0.3),
    ClassSpec("car", 3, "vehicle", "\U0001f697", _n("car", "automobile", "red car")),
    ClassSpec("motorcycle", 4, "vehicle", "\U0001f3cd", _n("motorcycle", "motorbike"), with_person=0.3),
    ClassSpec("airplane", 5, "vehicle", "\u2708", _n("airplane", "plane", "aeroplane", "jet")),
    ClassSpec("bus", 6, "vehicle", "\U0001f68c", _n("bus|buses", "city bus|city buses")),
    ClassSpec("train", 7, "vehicle", "\U0001f682", _n("train", "locomotive", "steam train")),
    ClassSpec("truck", 8, "vehicle", "\U0001f69a", _n("truck", "lorry|lorries", "delivery truck")),
    ClassSpec("boat", 9, "vehicle", "\u26f5", _n("boat", "sailboat", "sailing boat")),
    ClassSpec("traffic light", 10, "outdoor", "\U0001f6a6",
              nouns=_n("traffic light", "traffic signal", "stoplight")),
    ClassSpec("stop sign", 13, "outdoor", "\U0001f6d1", _n("stop sign", "red stop sign"), countable=False),
    ClassSpec("bird", 16, "animal", "\U0001f426", _n("bird", "bluebird", "songbird")),
    ClassSpec("cat", 17, "animal", "\U0001f408", _n("cat", "kitten", "kitty|kitties")),
    ClassSpec("dog", 18, "animal", "\U0001f415", with_person=0.3,
              nouns=_n("dog", "puppy|puppies", "doggy|doggies", "pup")),
    ClassSpec("horse", 19, "animal", "\U0001f40e", _n("horse", "pony|ponies", "stallion"), with_person=0.25),
    ClassSpec("sheep", 20, "animal", "\U0001f411", _n("sheep|sheep", "lamb", "ewe")),
    ClassSpec("cow", 21, "animal", "\U0001f404", _n("cow", "calf|calves", "dairy cow")),
    ClassSpec("elephant", 22, "animal", "\U0001f418", _n("elephant")),
    ClassSpec("bear", 23, "animal", "\U0001f43b", _n("bear", "brown bear", "grizzly bear")),
    ClassSpec("zebra", 24, "animal", "\U0001f993", _n("zebra")),
    ClassSpec("giraffe", 25, "animal", "\U0001f992", _n("giraffe")),
    ClassSpec("backpack", 27, "accessory", "\U0001f392", countable=False, with_person=0.3,
              nouns=_n("backpack", "rucksack", "school bag")),
    ClassSpec("umbrella", 28, "accessory", "\u2602", _n("umbrella", "parasol"), with_person=0.3),
    ClassSpec("handbag", 31, "accessory", "\U0001f45c", countable=False, with_person=0.3,
              nouns=_n("handbag", "purse")),
    ClassSpec("tie", 32, "accessory", "\U0001f454", countable=False, with_person=0.4,
              nouns=_n("tie", "necktie", "shirt and tie|shirts and ties")),
    ClassSpec("suitcase", 33, "accessory", "\U0001f9f3", with_person=0.3,
              nouns=_n("suitcase", "piece of luggage|pieces of luggage")),
    ClassSpec("frisbee", 34, "sports", "\U0001f94f", countable=False, with_person=0.5,
              nouns=_n("frisbee", "flying disc")),
    ClassSpec("skis", 35, "sports", "\U0001f3bf", countable=False, with_person=0.6,
              nouns=_n("pair of skis|pairs of skis", "ski boot and skis|ski boots and skis")),
    ClassSpec("sports ball", 37, "sports", "\u26bd", _n("ball", "soccer ball", "football"), with_person=0.3),
    ClassSpec("kite", 38, "sports", "\U0001fa81", _n("kite", "colorful kite"), with_person=0.5),
    ClassSpec("baseball bat", 39, "sports", "\U0001f3cf", countable=False, with_person=0.6,
              nouns=_n("baseball bat", "bat", "wooden bat")),
    ClassSpec("skateboard", 41, "sports", "\U0001f6f9", countable=False, with_person=0.6,
              nouns=_n("skateboard", "skate board")),
    ClassSpec("tennis racket", 43, "sports", "\U0001f3f8", countable=False, with_person=0.6,
              nouns=_n("tennis racket", "racket", "racquet")),
    ClassSpec("bottle", 44, "kitchen", "\U0001f37e", _n("bottle", "champagne bottle", "glass bottle")),
    ClassSpec("wine glass", 46, "kitchen", "\U0001f377",
              nouns=_n("wine glass|wine glasses", "glass of wine|glasses of wine")),
    ClassSpec("cup", 47, "kitchen", "\u2615", _n("cup", "coffee cup", "mug", "cup of coffee|cups of coffee")),
    ClassSpec("fork", 48, "kitchen", "\U0001f374", _n("fork", "silver fork"), countable=False),
    ClassSpec("knife", 49, "kitchen", "\U0001f52a", countable=False,
              nouns=_n("knife|knives", "kitchen knife|kitchen knives")),
    ClassSpec("spoon", 50, "kitchen", "\U0001f944", _n("spoon", "metal spoon"), countable=False),
    ClassSpec("bowl", 51, "kitchen", "\U0001f963", _n("bowl", "cereal bowl", "blue bowl"), countable=False),
    ClassSpec("banana", 52, "food", "\U0001f34c", _n("banana", "ripe banana")),
    ClassSpec("apple", 53, "food", "\U0001f34e", _n("apple", "red apple")),
    ClassSpec("sandwich", 54, "food", "\U0001f96a", _n("sandwich|sandwiches", "sub|subs")),
    ClassSpec("orange", 55, "food", "\U0001f34a", _n("orange", "tangerine", "mandarin")),
    ClassSpec("broccoli", 56, "food", "\U0001f966", countable=False,
              nouns=_n("head of broccoli|heads of broccoli", "piece of broccoli|pieces of broccoli")),
    ClassSpec("carrot", 57, "food", "\U0001f955", _n("carrot")),
    ClassSpec("hot dog", 58, "food", "\U0001f32d", _n("hot dog", "hotdog", "frankfurter")),
    ClassSpec("pizza", 59, "food", "\U0001f355",
              nouns=_n("pizza", "slice of pizza|slices of pizza", "pizza slice")),
    ClassSpec("donut", 60, "food", "\U0001f369", _n("donut", "doughnut")),
    ClassSpec("cake", 61, "food", "\U0001f382", _n("cake", "birthday cake"), countable=False),
    ClassSpec("chair", 62, "furniture", "\U0001fa91", _n("chair", "wooden chair")),
    ClassSpec("couch", 63, "furniture", "\U0001f6cb", _n("couch|couches", "sofa"), countable=False),
    ClassSpec("potted plant", 64, "furniture", "\U0001fab4",
              nouns=_n("potted plant", "houseplant", "plant in a pot|plants in pots")),
    ClassSpec("bed", 65, "furniture", "\U0001f6cf", _n("bed", "double bed"), countable=False),
    ClassSpec("toilet", 70, "furniture", "\U0001f6bd", _n("toilet", "white toilet"), countable=False),
    ClassSpec("tv", 72, "electronic", "\U0001f4fa", _n("tv", "television", "tv set", "television set")),
    ClassSpec("laptop", 73, "electronic", "\U0001f4bb", _n("laptop", "laptop computer", "notebook computer")),
    ClassSpec("mouse", 74, "electronic", "\U0001f5b1", countable=False,
              nouns=_n("computer mouse|computer mice", "mouse|mice")),
    ClassSpec("keyboard", 76, "electronic", "\u2328", _n("keyboard", "computer keyboard"), countable=False),
    ClassSpec("cell phone", 77, "electronic", "\U0001f4f1", with_person=0.3,
              nouns=_n("cell phone", "mobile phone", "smartphone", "phone")),
    ClassSpec("book", 84, "indoor", "\U0001f4d5", _n("book", "red book", "novel")),
    ClassSpec("clock", 85, "indoor", "\u23f0", _n("clock", "alarm clock"), countable=False),
    ClassSpec("vase", 86, "indoor", "\U0001f3fa", _n("vase", "clay vase")),
    ClassSpec("scissors", 87, "indoor", "\u2702", _n("pair of scissors|pairs of scissors"), countable=False),
    ClassSpec("teddy bear", 88, "indoor", "\U0001f9f8", _n("teddy bear", "teddy|teddies", "stuffed bear")),
    ClassSpec("toothbrush", 90, "indoor", "\U0001faa5", countable=False,
              nouns=_n("toothbrush|toothbrushes", "tooth brush|tooth brushes")),
)  # fmt: skip

# COCO categories left out because no emoji shows them recognisably on its own: the closest glyphs
# show something else (fire extinguisher, chair, winter gloves, ramen) or a person riding the object
# (snowboarder, surfer), which would put an unlabelled person into the image.
SKIPPED_COCO_CLASSES: tuple[str, ...] = (
    "fire hydrant",
    "parking meter",
    "bench",
    "snowboard",
    "baseball glove",
    "surfboard",
    "dining table",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "remote",
    "hair drier",
)

CLASS_NAMES: tuple[str, ...] = tuple(spec.name for spec in CLASSES)
SUPERCATEGORIES: tuple[str, ...] = tuple(spec.supercategory for spec in CLASSES)


@dataclass(frozen=True)
class Layer:
    """One horizontal band of a background, from ``top`` to ``bottom`` (fractions of the height).

    kind: "gradient" (colour to colour2, top to bottom), "checker", "grid" (colour with colour2 lines),
    "planks" (vertical stripes), "stripes" (horizontal stripes), "dashes" (colour2 band with colour
    dashes) or "waves" (gradient with light wavy lines). ``period`` is a fraction of the image side;
    ``texture`` the amplitude of a fixed grain pattern in 0-255 units.
    """

    kind: str
    top: float
    bottom: float
    color: RGB
    color2: RGB
    period: float = 0.125
    texture: float = 0.0


@dataclass(frozen=True)
class SceneSpec:
    """A scene type: how often it occurs, how its background looks and what it tends to contain.

    ``person_prob`` is the chance that people are in the picture; ``objects`` are relative weights of
    the other classes, so co-occurrence comes from sharing a scene rather than from fixed pairs.
    """

    name: str
    noun: str
    weight: float
    person_prob: float
    phrases: tuple[str, ...]
    background: tuple[Layer, ...]
    objects: dict[str, float]


_SKY = ((125, 180, 230), (190, 218, 242))

SCENES: tuple[SceneSpec, ...] = (
    SceneSpec(
        "street", "street", 0.12, 0.5,
        ("on a street", "on a city street", "in the street", "in town"),
        (Layer("gradient", 0.0, 0.28, *_SKY),
         Layer("planks", 0.28, 0.52, (170, 130, 110), (140, 135, 140), period=0.22, texture=6),
         Layer("gradient", 0.52, 1.0, (105, 105, 110), (75, 75, 80), texture=8),
         Layer("dashes", 0.74, 0.77, (235, 235, 225), (80, 80, 85), period=0.25)),
        {"car": 12, "bus": 5, "truck": 5, "bicycle": 4, "motorcycle": 4, "traffic light": 4, "stop sign": 3,
         "dog": 2.2, "handbag": 2, "backpack": 2, "umbrella": 2, "cell phone": 1.5, "bird": 1,
         "skateboard": 1},
    ),
    SceneSpec(
        "kitchen", "kitchen", 0.08, 0.28,
        ("in a kitchen", "in the kitchen", "on a kitchen counter"),
        (Layer("grid", 0.0, 0.62, (228, 226, 215), (185, 188, 192), period=0.125),
         Layer("gradient", 0.62, 1.0, (150, 112, 82), (118, 84, 60), texture=7)),
        {"bottle": 3, "cup": 4, "wine glass": 2, "knife": 3, "fork": 2.5, "spoon": 2.5, "bowl": 4,
         "banana": 3, "apple": 3, "orange": 3, "broccoli": 3, "carrot": 3, "sandwich": 2, "cake": 1.5,
         "vase": 1.5, "potted plant": 1.5, "clock": 1.5, "scissors": 1.5, "cat": 1.5, "dog": 1, "chair": 2,
         "toothbrush": 0.3},
    ),
    SceneSpec(
        "living room", "living room", 0.08, 0.3,
        ("in a living room", "in the living room", "at home", "in the lounge"),
        (Layer("gradient", 0.0, 0.6, (222, 203, 172), (205, 186, 156)),
         Layer("planks", 0.6, 1.0, (168, 122, 82), (146, 102, 66), period=0.14, texture=6)),
        {"couch": 6, "tv": 5, "chair": 4, "potted plant": 3, "clock": 2, "book": 3, "vase": 2.5, "cat": 3,
         "dog": 2, "teddy bear": 2, "laptop": 2, "cup": 2, "cell phone": 2},
    ),
    SceneSpec(
        "bedroom", "bedroom", 0.05, 0.22,
        ("in a bedroom", "in the bedroom", "in a bedroom at home"),
        (Layer("gradient", 0.0, 0.58, (202, 192, 226), (186, 176, 212)),
         Layer("gradient", 0.58, 1.0, (160, 118, 136), (135, 98, 116), texture=10)),
        {"bed": 7, "teddy bear": 3, "book": 3, "clock": 3, "laptop": 2, "cell phone": 2, "cat": 2.5,
         "dog": 1.5, "suitcase": 1.5, "tie": 1.5, "backpack": 1.5, "chair": 1.5, "potted plant": 1},
    ),
    SceneSpec(
        "park", "park", 0.09, 0.4,
        ("in a park", "in the park", "on the grass", "at the park"),
        (Layer("gradient", 0.0, 0.42, *_SKY),
         Layer("gradient", 0.42, 1.0, (108, 172, 78), (70, 136, 50), texture=14)),
        {"dog": 4.2, "frisbee": 4, "sports ball": 3, "kite": 3, "bicycle": 3, "bird": 2, "umbrella": 1.5,
         "backpack": 1.5, "apple": 1, "banana": 1, "skateboard": 2, "tennis racket": 1, "baseball bat": 1,
         "sandwich": 1, "bottle": 1},
    ),
    SceneSpec(
        "beach", "beach", 0.06, 0.42,
        ("on the beach", "at the beach", "by the sea", "on the sand"),
        (Layer("gradient", 0.0, 0.32, *_SKY),
         Layer("waves", 0.32, 0.52, (45, 125, 192), (72, 160, 205), period=0.1),
         Layer("gradient", 0.52, 1.0, (236, 216, 162), (218, 194, 140), texture=10)),
        {"umbrella": 5, "kite": 4, "frisbee": 3, "sports ball": 3, "boat": 3, "bird": 2.5, "dog": 2.2,
         "car": 1, "bottle": 2, "sandwich": 1.5, "handbag": 1.5, "backpack": 1.5},
    ),
    SceneSpec(
        "farm", "farm", 0.06, 0.22,
        ("on a farm", "in a field", "at the farm", "in a pasture"),
        (Layer("gradient", 0.0, 0.38, *_SKY),
         Layer("gradient", 0.38, 0.86, (152, 186, 82), (122, 152, 62), texture=12),
         Layer("gradient", 0.86, 1.0, (150, 112, 76), (130, 96, 64), texture=10)),
        {"cow": 6, "horse": 5, "sheep": 5, "bird": 2, "dog": 2, "cat": 1, "truck": 2, "carrot": 1.5,
         "apple": 1.5},
    ),
    SceneSpec(
        "office", "office", 0.08, 0.38,
        ("in an office", "at the office", "on a desk", "at work"),
        (Layer("gradient", 0.0, 0.62, (216, 219, 223), (200, 203, 208)),
         Layer("gradient", 0.62, 1.0, (142, 106, 76), (112, 80, 56), texture=6)),
        {"laptop": 5, "keyboard": 6, "mouse": 6, "tv": 3, "cell phone": 3, "book": 3, "cup": 3, "chair": 4,
         "scissors": 2, "clock": 2, "potted plant": 2, "backpack": 1.5, "tie": 3},
    ),
    SceneSpec(
        "restaurant", "restaurant", 0.08, 0.42,
        ("in a restaurant", "at a restaurant", "at a cafe", "at dinner"),
        (Layer("gradient", 0.0, 0.5, (186, 92, 68), (160, 78, 58)),
         Layer("checker", 0.5, 1.0, (236, 232, 222), (214, 176, 166), period=0.125)),
        {"pizza": 5, "hot dog": 4, "sandwich": 3, "cake": 3, "donut": 4, "wine glass": 4, "cup": 3,
         "bottle": 3, "fork": 3, "knife": 3, "spoon": 2, "bowl": 3, "chair": 4, "broccoli": 1, "orange": 1,
         "banana": 1},
    ),
    SceneSpec(
        "harbour", "harbour", 0.05, 0.35,
        ("in a harbour", "at the harbor", "on the water", "by the lake"),
        (Layer("gradient", 0.0, 0.36, *_SKY),
         Layer("waves", 0.36, 1.0, (42, 104, 162), (26, 72, 132), period=0.12)),
        {"boat": 9, "bird": 3, "umbrella": 1.5, "suitcase": 1.5, "dog": 1, "bicycle": 1.5, "backpack": 1,
         "car": 1},
    ),
    SceneSpec(
        "airport", "airport", 0.05, 0.35,
        ("at an airport", "at the airport", "in the sky", "on the runway"),
        (Layer("gradient", 0.0, 0.8, (95, 160, 230), (178, 212, 242)),
         Layer("gradient", 0.8, 1.0, (92, 92, 98), (78, 78, 84), texture=6),
         Layer("dashes", 0.88, 0.91, (240, 240, 230), (85, 85, 91), period=0.3)),
        {"airplane": 9, "suitcase": 4, "backpack": 1.5, "car": 1.5, "handbag": 2, "bird": 1.5,
         "cell phone": 1.5, "bus": 1.5, "truck": 1.5},
    ),
    SceneSpec(
        "sports field", "sports field", 0.06, 0.5,
        ("on a sports field", "on the field", "on the pitch", "at a stadium"),
        (Layer("gradient", 0.0, 0.24, *_SKY),
         Layer("stripes", 0.24, 1.0, (92, 166, 72), (80, 150, 62), period=0.14, texture=6)),
        {"sports ball": 6, "tennis racket": 4, "baseball bat": 4, "frisbee": 3, "skateboard": 2, "dog": 1,
         "bottle": 1.5, "backpack": 1.5},
    ),
    SceneSpec(
        "snow", "snowy", 0.04, 0.5,
        ("in the snow", "on a ski slope", "on a snowy mountain", "on the slopes"),
        (Layer("gradient", 0.0, 0.35, (168, 198, 234), (214, 228, 246)),
         Layer("gradient", 0.35, 1.0, (246, 248, 252), (218, 226, 240), texture=5)),
        {"skis": 7, "backpack": 1.5, "dog": 0.6, "bird": 1, "cup": 0.8},
    ),
    SceneSpec(
        "savanna", "savanna", 0.045, 0.1,
        ("in the savanna", "at the zoo", "in the wild", "on the plains"),
        (Layer("gradient", 0.0, 0.45, (150, 200, 235), (226, 224, 198)),
         Layer("gradient", 0.45, 1.0, (206, 180, 102), (176, 146, 76), texture=14)),
        {"elephant": 5, "zebra": 5, "giraffe": 5, "bear": 4, "bird": 2},
    ),
    SceneSpec(
        "bathroom", "bathroom", 0.04, 0.08,
        ("in a bathroom", "in the bathroom"),
        (Layer("grid", 0.0, 0.7, (202, 230, 236), (160, 192, 202), period=0.1),
         Layer("checker", 0.7, 1.0, (232, 232, 232), (182, 182, 188), period=0.1)),
        {"toilet": 7, "toothbrush": 5, "scissors": 1.5, "bottle": 1.5, "cup": 1.5, "potted plant": 1,
         "cat": 1},
    ),
    SceneSpec(
        "station", "train station", 0.05, 0.45,
        ("at a train station", "at the station", "on a platform", "by the railway"),
        (Layer("gradient", 0.0, 0.4, (172, 176, 186), (156, 160, 170)),
         Layer("gradient", 0.4, 0.8, (152, 150, 148), (136, 134, 132), texture=6),
         Layer("stripes", 0.8, 1.0, (96, 80, 64), (124, 124, 130), period=0.05)),
        {"train": 9, "suitcase": 3, "backpack": 1.5, "car": 1.5, "handbag": 2, "clock": 2, "cell phone": 1.5,
         "bus": 1},
    ),
)  # fmt: skip

# Caption templates. {objects} is the full object list, {first}/{rest} split it, {scene} is a
# prepositional phrase ("in a park"), {a_noun} the scene noun with its article and {be} agrees
# with the object count.
TEMPLATES: tuple[str, ...] = (
    "{objects} {scene}.",
    "a photo of {objects} {scene}.",
    "{scene}, there {be} {objects}.",
    "{objects} can be seen {scene}.",
    "this picture shows {objects} {scene}.",
    "an image of {objects} {scene}.",
    "{a_noun} scene with {objects}.",
    "there {be} {objects} {scene}.",
    "{scene} you can see {objects}.",
    "a picture taken {scene} showing {objects}.",
    "close-up of {objects} {scene}.",
)
# Templates that need at least two object groups.
PAIR_TEMPLATES: tuple[str, ...] = (
    "{first} next to {rest} {scene}.",
    "{first} together with {rest} {scene}.",
    "{first} beside {rest} {scene}.",
)

COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
ADJECTIVES: tuple[str, ...] = ("small", "big", "little", "large", "nice", "old")
PREFIXES: tuple[str, ...] = ("apparently", "i think", "probably", "look,", "wow,", "maybe")
