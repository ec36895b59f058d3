

def test_producers_follow_the_per_image_files():
    from irnet_fast.pipeline import steps
    assert steps.producers("cam_to_ir_label") == ("make_cam",)
    assert steps.producers("eval_ir_label") == ("cam_to_ir_label",)
    assert steps.producers("tune") == ("make_sem_seg",) and steps.producers("export_coco") == ("make_ins_seg",)
    assert steps.producers("make_cam") == () and steps.producers("not_a_step") == ()
